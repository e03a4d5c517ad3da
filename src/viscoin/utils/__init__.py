"""Plumbing shared by every command: atomic files, checkpoints, run directories, logging, devices."""
