"""The supervisors' compliance view: the model (model.py) and the page (web.py)."""
