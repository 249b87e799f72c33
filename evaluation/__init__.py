"""Model-quality report for a checkpoint (`make eval` -> artifacts/report/)."""
