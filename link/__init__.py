"""What unit and dock must agree on: the link's routes and message shapes
(routes.py), the agency PKI (pki.py) and the USB gadget's addressing
(gadget.py). Imports nothing of ours but sealing."""
