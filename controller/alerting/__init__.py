"""Rounds judged into states, incidents and notices: the pure rules (`rules`), the evaluator that
applies them (`evaluator`) and their store."""
