"""What VirusTotal API v3's objects and errors are, for both sides of the `ThreatIntel` port: where an
object lives and its web page (`objects`), the typed errors (`errors`) and the analyst's trimmed view of an
object (`context`). The HTTP client is an adapter (`vtriage.adapters.virustotal`). Import from the
submodules; this package imports nothing eagerly."""
