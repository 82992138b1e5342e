"""Due monitors into check jobs: the grid and job ids (`rules`), the scheduler, and confirmation
rounds."""
