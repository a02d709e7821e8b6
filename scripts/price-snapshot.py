#!/usr/bin/env python3
"""Writes the velocity price snapshot (data/pricing/snapshot.tsv) from AWS Price List bulk files.

Usage:
  scripts/price-snapshot.py --date YYYY-MM-DD [--source TEXT] [--regions r1,r2] OFFER.json... > snapshot.tsv

Each OFFER.json is an offer file in the AWS Price List bulk format (the "current" offer file of
AmazonEC2, AmazonRDS, AmazonEKS or AmazonSageMaker, downloaded from
https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/<offer>/current/index.json, or a regional
one). Nothing is fetched here: the script reads files already on disk (decision 172).

Kept: on-demand hourly USD prices of
  ec2                 Compute Instance, Linux, Shared tenancy, no pre-installed software,
                      capacity status Used, key = instance type
  natgateway          NAT Gateway hours (usage type *NatGateway-Hours), key = "-"
  rds                 Database Instance, MySQL/PostgreSQL/MariaDB, Single-AZ or Multi-AZ,
                      key = class/engine/single-az|multi-az (engine as CloudTrail spells it)
  eks                 cluster hours (usage type *AmazonEKS-Hours:perCluster), key = "cluster"
  sagemaker-training  ML Instance, component Training, key = ml.* instance type
  sagemaker-hosting   ML Instance, component Hosting, key = ml.* instance type
Everything else (other operating systems, reserved and spot terms, data processing, storage) is
left out: the controller reports what is not in the snapshot as unknown, never as zero.
"""

import argparse
import json
import sys

RDS_ENGINES = {"MySQL": "mysql", "PostgreSQL": "postgres", "MariaDB": "mariadb"}
RDS_DEPLOYMENTS = {"Single-AZ": "single-az", "Multi-AZ": "multi-az"}


def classify(product):
    """(service, key) of a product the snapshot keeps, else None."""
    family = product.get("productFamily", "")
    a = product.get("attributes", {})
    usage = a.get("usagetype", "")
    if family == "Compute Instance":
        if (
            a.get("operatingSystem") == "Linux"
            and a.get("tenancy") == "Shared"
            and a.get("preInstalledSw") == "NA"
            and a.get("capacitystatus", "Used") == "Used"
            and a.get("instanceType")
        ):
            return "ec2", a["instanceType"]
        return None
    if family == "NAT Gateway" and usage.endswith("NatGateway-Hours"):
        return "natgateway", "-"
    if family == "Database Instance":
        engine = RDS_ENGINES.get(a.get("databaseEngine", ""))
        deployment = RDS_DEPLOYMENTS.get(a.get("deploymentOption", ""))
        if engine and deployment and a.get("instanceType"):
            return "rds", f"{a['instanceType'].lower()}/{engine}/{deployment}"
        return None
    if usage.endswith("AmazonEKS-Hours:perCluster"):
        return "eks", "cluster"
    if family == "ML Instance" and a.get("instanceName"):
        component = a.get("component", "")
        if component == "Training":
            return "sagemaker-training", a["instanceName"]
        if component == "Hosting":
            return "sagemaker-hosting", a["instanceName"]
    return None


def hourly_usd(offer, sku):
    """The on-demand USD price per hour of a SKU, or None (no term, not hourly, not positive)."""
    terms = offer.get("terms", {}).get("OnDemand", {}).get(sku, {})
    for term in terms.values():
        for dimension in term.get("priceDimensions", {}).values():
            if dimension.get("unit") not in ("Hrs", "Hours", "hours"):
                continue
            try:
                usd = float(dimension.get("pricePerUnit", {}).get("USD", ""))
            except ValueError:
                continue
            if usd > 0:
                return usd
    return None


def rows(offer, regions):
    for sku, product in offer.get("products", {}).items():
        kept = classify(product)
        if not kept:
            continue
        region = product.get("attributes", {}).get("regionCode", "")
        if not region or (regions and region not in regions):
            continue
        usd = hourly_usd(offer, sku)
        if usd is None:
            continue
        yield kept[0], region, kept[1], usd


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", required=True, help="the snapshot date, YYYY-MM-DD")
    parser.add_argument("--source", default="AWS Price List bulk files", help="header text")
    parser.add_argument("--regions", default="", help="comma-separated region codes to keep")
    parser.add_argument("offers", nargs="+", help="offer files in the Price List bulk format")
    args = parser.parse_args()
    regions = {r for r in args.regions.split(",") if r}
    prices = {}
    for path in args.offers:
        with open(path, encoding="utf-8") as f:
            offer = json.load(f)
        if "products" not in offer or "terms" not in offer:
            sys.exit(f"{path}: not a Price List offer file (no products/terms)")
        for service, region, key, usd in rows(offer, regions):
            old = prices.get((service, region, key))
            if old is not None and old != usd:
                # Two SKUs for one key (for example two license models): keep the lower, so the
                # snapshot never overstates what was started.
                usd = min(old, usd)
            prices[(service, region, key)] = usd
    out = sys.stdout
    out.write("# AutoGuardRails velocity price snapshot: on-demand USD per hour\n")
    out.write(f"# date: {args.date}\n")
    out.write(f"# source: {args.source}\n")
    out.write("# generated by scripts/price-snapshot.py; columns: service region key usd_per_hour\n")
    for (service, region, key), usd in sorted(prices.items()):
        out.write(f"{service}\t{region}\t{key}\t{usd:.6g}\n")


if __name__ == "__main__":
    main()
