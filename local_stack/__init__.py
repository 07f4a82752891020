"""Run the proxy on one machine: moto for AWS, a Dots emulator, and a local HTTP API gateway."""
