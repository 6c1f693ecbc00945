"""Files shipped into the gateway pod (read as text by components/litellm.py, never imported there)."""
