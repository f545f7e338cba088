from setuptools import find_packages, setup

setup(
    name="releng-hardware",
    version="1.0.0",
    description="When each Taskcluster hardware worker was last seen doing work",
    packages=find_packages(include=["releng_hardware", "releng_hardware.*"]),
    package_data={"releng_hardware.web": ["templates/*.html", "static/*"],
                  "releng_hardware.store": ["lua/*.lua"]},
    python_requires=">=3.11",
    install_requires=[
        "flask>=3.0,<4",
        # imported directly (werkzeug.exceptions), not only through flask
        "werkzeug>=3.0,<4",
        "kombu>=5.3,<6",
        "redis>=5.0,<9",
        "hiredis>=2.0",
        "gunicorn>=22",
        "python-dateutil>=2.8",
        "orjson>=3.9",
        "prometheus-client>=0.20",
        "taskcluster>=60,<200",
        # imported directly (taskcluster.client, tools.fake_taskcluster), not only through taskcluster
        "requests>=2.31,<3",
        "mohawk>=1.1,<2",
        "click>=8.1",
    ],
    entry_points={
        "console_scripts": [
            "releng-hardware-listen=releng_hardware.cli:listen",
            "releng-hardware-preload=releng_hardware.cli:preload",
            "releng-hardware-simulate=releng_hardware.cli:simulate",
            "releng-hardware-inventory=releng_hardware.cli:inventory",
            "releng-hardware=releng_hardware.cli:main",
        ],
    },
)
