"""The run folder: the contract between a training run and everything that reads it afterwards.

folder names every file of it (``RunDir``); runio writes them atomically and keeps paths inside the
folder; summary types summary.json (``RunSummary``) for the report and the benchmarks; runlock keeps
two processes off one folder; safe_read opens files a user may have damaged and names what is wrong;
diskspace checks there is room before anything large is written.
"""
