"""The dispatch core: every rule about a request, shared by the simulator and the live gateway."""
