"""The shared base: settings, the registry seam, the prediction-log and run stores, the monitor job.

Below the service and training, above the pure packages (data_contracts, features, monitoring).
Each store is opened by one factory (`log_store_from_settings`, `run_store_from_settings`,
`registry_from_settings`) from the one `Settings` object the entry point builds.
"""
