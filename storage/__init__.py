"""All I/O with PostgreSQL, Redis and Kafka: one module per aggregate, SQL migrations, transactions."""
