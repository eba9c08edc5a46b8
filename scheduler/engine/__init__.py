"""The firing engine: occurrences made into executions, run, and recorded."""
