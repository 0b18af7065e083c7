"""The gateway: request pipeline, router and backends between the HTTP edge and the models."""
