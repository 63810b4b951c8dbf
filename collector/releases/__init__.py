"""Agent releases: signed packages the collector serves to the agents whose policy names them (issue 23).

- manifest.py: the release key (made and used offline), signing a manifest, and verifying one against the
  release keys the collector trusts (``agent_releases.public_keys``) and the file against the manifest.
- service.py: adding, listing, pausing and resuming releases (store + files + audit).
- rollout.py: per version and per stage, how many points run it and how many failed; the automatic pause.
"""
