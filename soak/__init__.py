"""`make soak`: long reliability runs against a real TorchServe (README.md "Reliability")."""
