"""Emulator of AWS Elastic Disaster Recovery (DRS), which moto lacks."""
