"""Brokers: the ``MessageBroker`` interface and its implementations.

``base`` holds the interface; ``memory`` the in-process broker; ``rabbitmq``
the RabbitMQ broker (imported only when RabbitMQ mode is asked for).
"""
