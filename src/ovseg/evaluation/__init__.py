"""Judging ovseg against labelled data: which protocol (``protocols``), by prompt (``prompt``), the papers'
semantic protocol (``semantic``), DAVIS's J and F on videos (``video``), and reading labelled sets and class
files (``datasets``).
"""
