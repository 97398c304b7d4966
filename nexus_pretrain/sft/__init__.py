"""Supervised fine-tuning data: instruction examples, chat-template tokenization with response-only
targets, and a resumable sampler behind the trainer's data interface (data.source=sft)."""
