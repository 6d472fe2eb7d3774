"""The emulated unit: the card as it ships, booted under QEMU (test support only).

A Raspberry-Pi-OS-shaped card is built from Debian 12 packages (mmdebstrap,
`image.py`), flashed unchanged by `tools/flash.py image` (`flash.py` here),
booted under QEMU (`qemu.py`) with kernel stand-ins for the unit's hardware
(`guest/`), and driven from the host (`agent.py`, `devices.py`, `dock.py`).
`scripts/emulate` is the command; `tests/test_emulated.py` the tests.

Nothing here is product code: firmware, boot, hal, sealing and capture never
import it.
"""
