"""Packaging for pdserver (edge node daemon and cloud controller) and pdtools (CLI)."""
from setuptools import find_packages, setup

with open("requirements.txt") as f:
    requirements = [line.strip() for line in f if line.strip() and not line.startswith("#")]

setup(
    name="paradrop",
    version="0.1.0",
    description="ParaDrop edge computing platform: node daemon, cloud controller and pdtools CLI",
    python_requires=">=3.11",
    packages=find_packages(include=["pdserver", "pdserver.*", "pdtools", "pdtools.*"]),
    package_data={"pdserver": ["web/*", "web/**/*", "*.json"]},
    install_requires=requirements,
    entry_points={
        "console_scripts": [
            "pdserver = pdserver.main:main",
            "pdtools = pdtools.main:main",
        ]
    },
)
