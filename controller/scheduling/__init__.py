"""Due monitors into check jobs: the grid and job ids (`rules`), the scheduler (a worker
driving its planner, admission and publisher), and confirmation rounds."""
