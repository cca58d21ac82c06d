"""KFP lightweight components, one per step. Each body imports cxrtl and calls it; nothing else. placement.py:
where their tasks land on a cluster."""
