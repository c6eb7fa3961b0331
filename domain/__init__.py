"""Business rules shared by HTTP handlers and real-time rooms: errors, authorization, validation."""
