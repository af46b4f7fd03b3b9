"""ament_python setup for geoloc_ros (also a plain pip-installable package)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "geoloc_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench", "bench.*"]),
    package_data={
        PACKAGE: [
            "msg/*.msg",
            "data/*",
            "data/**/*",
        ],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/profiles", glob("config/profiles/*.yaml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools", "numpy", "scipy", "pyyaml"],
    zip_safe=True,
    maintainer="geoloc_ros developers",
    maintainer_email="dev@geoloc-ros.invalid",
    description="Global localization on a prior map: BEV place recognition, object-map "
    "alignment, GNSS-degradation-aware fusion (ROS 2).",
    license="BSD-3-Clause",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "geoloc = geoloc_ros.cli:main",
            "geoloc_node = geoloc_ros.nodes.geoloc:main",
            "bev_localizer = geoloc_ros.nodes.bev_localizer:main",
            "object_localizer = geoloc_ros.nodes.object_localizer:main",
            "fusion_node = geoloc_ros.nodes.fusion:main",
        ],
    },
)
