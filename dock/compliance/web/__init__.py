"""The supervisors' compliance page (R22), served by the dock on loopback only.

    bodycam-dock user-add --dock-dir DIR --name NAME --role ROLE [--department D]
    bodycam-dock supervisor-add --dock-dir DIR --name NAME [--password-file F]
    bodycam-dock page --dock-dir DIR [--port 8080] [--host 127.0.0.1]

Read-only over the dock's index and chain copies (dock/compliance/model.py).
Flask renders the Jinja2 templates in dock/compliance/templates/; waitress
serves it; no script runs in the browser. One module per concern:

    serve      the app (create_app), the loopback check, waitress, the commands
    auth       sign in and out, who is signed in (blueprint `auth`)
    accounts   people and their roles (the index's `people` table)
    context    what the signed-in person may see (dock/access.py), the audit log
    pages      overview, a unit, a unit's day, an officer, the usage ledger,
               the audit log (blueprint `pages`)
    exports    each day, officer and the ledger as PDF and CSV (blueprint `exports`)
    timeline   the matplotlib SVG picture the pages and PDFs show

Nothing here imports the court-copy stack (c2pa, PyAV): the page runs on a
dock installed without it.
"""
