"""Steps a person takes in the browser, each ended when the next page is there."""

from typing import Any


def follow(page: Any, target: Any) -> None:
    """Click a link or a form's button and wait until the page it leads to has
    loaded. A read straight after a bare click can see the old page, or part of
    the new one, and a check of a table then fails for no fault of the dock."""
    with page.expect_navigation(wait_until="load"):
        if isinstance(target, str):
            page.click(target)
        else:
            target.click()
