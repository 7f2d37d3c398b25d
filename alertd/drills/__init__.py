"""Drills: replay a scenario against an engine (alertd drill run, alertd demo).

scenario — the YAML timeline; runner — replays it and counts every delivery; views — checks
that every view of what is in force agrees after a step; render — the report; receivers —
the simulated broadcaster, portal, signage and loudspeaker receivers a drill listens with;
jma_replay — JMA sample telegrams moved to now for the drop folder.
"""
