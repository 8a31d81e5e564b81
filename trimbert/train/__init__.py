"""The training layer: fine-tune and evaluate through the HF Trainer (``finetune``), with settings
declared once (``settings``), the Trainer set-up (``trainer``) and task distillation from a
fine-tuned teacher (``distill``)."""
