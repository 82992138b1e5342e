"""A check job from the controller's side, below everything that makes, sends or judges one: its
signed id and longest life (`rules`), and the results the controller records in place of an
agent's (`result_kinds`)."""
