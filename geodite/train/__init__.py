"""Training, fine-tuning and distillation of Geodite models."""
