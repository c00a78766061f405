"""The engine as a service: websocket server and client, tokens, alerts, health (DESIGN §11)."""
