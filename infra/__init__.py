"""The whole system as one CDK app: one Stack made of one Construct per unit (see stack.py)."""
