"""Billing guard: an AWS Budget on the account's monthly cost that e-mails before the bill does.
NodePool limits cap how many accelerators Karpenter launches; this catches everything else."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from components.types import global_name

# (notification type, percent of the limit): spend already above 80 %, or forecast to pass 100 %.
THRESHOLDS = (("ACTUAL", 80), ("FORECASTED", 100))


@dataclass(frozen=True)
class BudgetArgs:
    cluster_name: str
    region: str
    monthly_usd: float
    emails: tuple[str, ...]


def budget_notifications(emails: tuple[str, ...]) -> list[dict]:
    return [
        {
            "comparison_operator": "GREATER_THAN",
            "notification_type": kind,
            "threshold": percent,
            "threshold_type": "PERCENTAGE",
            "subscriber_email_addresses": list(emails),
        }
        for kind, percent in THRESHOLDS
    ]


class BillingBudget(pulumi.ComponentResource):
    def __init__(self, name: str, args: BudgetArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:BillingBudget", name, None, opts)
        # The whole account's cost: a tag filter would need the tag activated for cost allocation
        # first, and the NAT, EFS and load balancers of the stack would be missed by a service filter.
        aws.budgets.Budget(
            f"{name}-monthly",
            name=global_name("monthly", args.cluster_name, args.region),  # Budgets are account-global
            budget_type="COST",
            time_unit="MONTHLY",
            limit_amount=f"{args.monthly_usd:.2f}",
            limit_unit="USD",
            notifications=budget_notifications(args.emails),
            opts=ResourceOptions(parent=self),
        )
        self.register_outputs({})
