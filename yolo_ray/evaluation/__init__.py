"""Evaluation that training and val.py share: P, R, mAP over a loader, its table, plots and prediction files."""
