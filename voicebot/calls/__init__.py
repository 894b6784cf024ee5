"""The call-placing vocabulary shared by the manager and the media workers: messages, outcomes, the
``CallPlacer`` protocol and its slot ledger. No pjsua2, no MQTT: both sides import it."""
