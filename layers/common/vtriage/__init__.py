"""vtriage: triage of cloud security alerts with VirusTotal enrichment.

The domain package shipped to Lambda as a layer. Nothing here imports moto or the local runner.
"""

__version__ = "0.1.0"
