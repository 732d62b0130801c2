"""Reporting: the run report (JSON and HTML), the summary for people, progress lines and the live
display. Built from the run state; never imports the runner.
"""
