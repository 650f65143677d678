"""What exists to emulate, script or measure a wearer: the emulated wearable and its scripted
sessions, the demo, the benches. The product (``odar run`` on a real wearable) never imports it.
"""
