"""Training: datasets, losses, trainers (fercomp train) and evaluation."""
