"""The dock: the unit's workstation (采集工作站) and its platform.

`bodycam-dock` (dock/cli.py) is its command. It pulls units over mutual TLS
(pull.py, service.py, discovery.py, client.py), keeps a verified copy and an
index (index.py), syncs to the agency (sync.py), reports (report.py), serves
the supervisors' page (compliance/) and makes court copies (courtcopy/).

It uses sealing, capture and link, never firmware or boot.
"""
