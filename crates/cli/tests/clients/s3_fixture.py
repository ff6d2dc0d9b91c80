"""Creates the buckets of the S3 test on a local moto server and uploads the files to load.

Usage: s3_fixture.py ENDPOINT TESTDATA_LOAD_DIR
"""

import sys

import boto3

endpoint, load_dir = sys.argv[1], sys.argv[2]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id="test",
    aws_secret_access_key="test",
    region_name="us-east-1",
)
for bucket in ("warehouse", "landing"):
    s3.create_bucket(Bucket=bucket)
for name in ("sales_2024_01.csv", "sales_2024_02.csv", "bad_type.csv"):
    s3.upload_file(f"{load_dir}/{name}", "landing", f"in/{name}")
print("fixture ready")
