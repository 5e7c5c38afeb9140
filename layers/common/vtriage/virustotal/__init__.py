"""VirusTotal API v3: the client (`client`), its typed errors (`errors`) and the analyst's trimmed view of
an object (`context`). Import from the submodules; this package imports nothing eagerly."""
