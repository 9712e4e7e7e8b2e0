"""Jobs: lifecycle, store, dispatcher, live events, webhooks and untrusted URLs."""
