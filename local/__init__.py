"""The embedded local AWS: moto's server, the EventBridge bridge and the ECS fleet simulator."""
