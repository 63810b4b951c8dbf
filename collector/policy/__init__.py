"""Central policy: what each point is checked against, decided at the collector (documents.py: the documents,
merging and validation; service.py: the rules of a change; signing.py: the signed answer agents fetch)."""
