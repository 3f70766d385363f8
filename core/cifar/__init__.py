"""CIFAR-10 lab: data (data.py), models (models.py), the trainer (train.py), sharpness (sharpness.py),
1-D loss profiles and escape (profiles.py), and the CLI (cli.py). See core/README.md."""
