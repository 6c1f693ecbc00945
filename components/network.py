"""VPC across several AZs: public subnets for load balancers, private subnets for nodes, NAT per AZ."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from components.types import NetworkHandle, allow_policy, trust_policy

TYPE = "llm-serving:platform:Network"


@dataclass(frozen=True)
class NetworkArgs:
    cluster_name: str
    cidr: str
    availability_zones: tuple[str, ...]
    logs_key_arn: pulumi.Input[str]  # CMK for the flow-log group (its policy names flow_log_group())
    region: str
    flow_log_retention_days: int = 365


def flow_log_group(cluster_name: str) -> str:
    return f"/aws/vpc/{cluster_name}/flow-logs"


def subnet_cidrs(cidr: str, azs: int) -> tuple[list[str], list[str]]:
    """Private /19s (room for many pod IPs with the VPC CNI) and public /24s, carved without overlap."""
    net = ipaddress.ip_network(cidr)
    if net.prefixlen > 16:
        raise ValueError(f"VPC CIDR {cidr} is too small: use a /16")
    blocks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(net.subnets(new_prefix=19))
    private = [str(s) for s in blocks[:azs]]
    # Public subnets live in the last /19 of the VPC, one /24 each.
    tail = blocks[-1]
    public = [str(s) for s in list(tail.subnets(new_prefix=24))[:azs]]
    return private, public


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        child = ResourceOptions(parent=self)
        c = args.cluster_name
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{c}-vpc"},
            opts=child,
        )
        # The VPC's default security group: no rules at all, so nothing that lands in it by default
        # can talk to anything (CIS EC2.2). Pulumi adopts the group and removes AWS's default rules.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[], tags={"Name": f"{c}-default-deny"}, opts=child
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{c}-igw"}, opts=child)
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
            tags={"Name": f"{c}-public"},
            opts=child,
        )
        private_cidrs, public_cidrs = subnet_cidrs(args.cidr, len(args.availability_zones))
        privates, publics, private_rts = [], [], []
        for i, az in enumerate(args.availability_zones):
            pub = self._public_subnet(name, args, vpc, az, public_cidrs[i], public_rt)
            nat = self._nat(name, c, az, pub, igw)
            priv, rt = self._private_subnet(name, c, vpc, az, private_cidrs[i], nat)
            privates.append(priv)
            private_rts.append(rt)
            publics.append(pub)
        self._s3_endpoint(name, args, vpc, private_rts)
        self._flow_logs(name, args, vpc)

        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in privates])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in publics])
        self.handle = NetworkHandle(
            vpc_id=vpc.id,
            private_subnet_ids=self.private_subnet_ids,
            public_subnet_ids=self.public_subnet_ids,
            vpc_cidr=args.cidr,
        )
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )

    def _public_subnet(
        self, name: str, args: NetworkArgs, vpc: aws.ec2.Vpc, az: str, cidr: str, route_table: aws.ec2.RouteTable
    ) -> aws.ec2.Subnet:
        """A zone's public subnet (load balancers and its NAT gateway), routed to the internet gateway."""
        c = args.cluster_name
        pub = aws.ec2.Subnet(
            f"{name}-public-{az}",
            vpc_id=vpc.id,
            cidr_block=cidr,
            availability_zone=az,
            map_public_ip_on_launch=False,
            tags={"Name": f"{c}-public-{az}", "kubernetes.io/role/elb": "1"},
            opts=ResourceOptions(parent=self),
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public-{az}", subnet_id=pub.id, route_table_id=route_table.id, opts=ResourceOptions(parent=self)
        )
        return pub

    def _nat(self, name: str, c: str, az: str, pub: aws.ec2.Subnet, igw: aws.ec2.InternetGateway) -> aws.ec2.NatGateway:
        """One NAT gateway per zone, so a zone's nodes keep egress when another zone fails."""
        eip = aws.ec2.Eip(
            f"{name}-nat-{az}", domain="vpc", tags={"Name": f"{c}-nat-{az}"}, opts=ResourceOptions(parent=self)
        )
        return aws.ec2.NatGateway(
            f"{name}-nat-{az}",
            subnet_id=pub.id,
            allocation_id=eip.id,
            tags={"Name": f"{c}-nat-{az}"},
            opts=ResourceOptions(parent=self, depends_on=[igw]),
        )

    def _private_subnet(
        self, name: str, c: str, vpc: aws.ec2.Vpc, az: str, cidr: str, nat: aws.ec2.NatGateway
    ) -> tuple[aws.ec2.Subnet, aws.ec2.RouteTable]:
        """A zone's private subnet (nodes, internal load balancers), routed through its zone's NAT."""
        child = ResourceOptions(parent=self)
        priv = aws.ec2.Subnet(
            f"{name}-private-{az}",
            vpc_id=vpc.id,
            cidr_block=cidr,
            availability_zone=az,
            tags={"Name": f"{c}-private-{az}", "kubernetes.io/role/internal-elb": "1", "karpenter.sh/discovery": c},
            opts=child,
        )
        rt = aws.ec2.RouteTable(
            f"{name}-private-{az}",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
            tags={"Name": f"{c}-private-{az}"},
            opts=child,
        )
        aws.ec2.RouteTableAssociation(f"{name}-private-{az}", subnet_id=priv.id, route_table_id=rt.id, opts=child)
        return priv, rt

    def _s3_endpoint(
        self, name: str, args: NetworkArgs, vpc: aws.ec2.Vpc, route_tables: list[aws.ec2.RouteTable]
    ) -> None:
        """S3 through a gateway endpoint, not the NATs: image layers from ECR and weights from S3 are
        many GB per node, NAT bills each GB processed, and a gateway endpoint is free."""
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in route_tables],
            tags={"Name": f"{args.cluster_name}-s3"},
            opts=ResourceOptions(parent=self),
        )

    def _flow_logs(self, name: str, args: NetworkArgs, vpc: aws.ec2.Vpc) -> None:
        """VPC flow logs (rejected and accepted) to CloudWatch."""
        child = ResourceOptions(parent=self)
        logs = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=flow_log_group(args.cluster_name),
            retention_in_days=args.flow_log_retention_days,
            kms_key_id=args.logs_key_arn,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=trust_policy("vpc-flow-logs.amazonaws.com"),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=logs.arn.apply(
                lambda arn: allow_policy(
                    [arn, f"{arn}:*"], ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination=logs.arn,
            log_destination_type="cloud-watch-logs",
            iam_role_arn=role.arn,
            opts=child,
        )
