"""Kafka: client settings, the bounded topic reader, topics, groups, publishing."""
