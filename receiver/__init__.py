"""The delivery-receipt receiver: provider callbacks and engagement events become workflow signals."""
