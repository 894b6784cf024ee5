"""pjsua2: endpoint, media worker, call and media port. No dialog logic lives here."""
