"""Using a trained model: validation (val.py), detection (detect.py), the Python API and export."""
