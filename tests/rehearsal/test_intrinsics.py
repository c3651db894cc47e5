"""The rehearsal's CloudFormation intrinsics: values resolve as CloudFormation resolves them, and
anything it does not understand fails naming the template path instead of passing through."""

from __future__ import annotations

import pytest

from tests.rehearsal.intrinsics import Resolver, Unresolvable, cfn_strings

PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "eu-west-1",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


def resolver(**refs):
    def ref(name):
        if name not in refs:
            raise Unresolvable(f"no {name}")
        return refs[name]

    return Resolver(
        pseudo=PSEUDO,
        ref=ref,
        get_att=lambda logical_id, attr: f"{refs[logical_id]}.{attr}",
        import_value=lambda name: f"imported:{name}",
    )


def test_bucket_arn_split_back_to_its_name_as_the_cluster_request_does():
    arn = {"Fn::ImportValue": "lifecycle:BucketArn"}
    value = {"Fn::Select": [0, {"Fn::Split": ["/", {"Fn::Select": [5, {"Fn::Split": [":", arn]}]}]}]}
    r = Resolver(
        pseudo=PSEUDO, ref=lambda n: n, get_att=lambda *a: "", import_value=lambda name: "arn:aws:s3:::sagemaker-x"
    )
    assert r.resolve(value) == "sagemaker-x"


def test_sub_fills_pseudo_parameters_refs_attributes_variables_and_keeps_escaped_literals():
    r = resolver(Bucket="b1", Role="r1")
    text = "${AWS::Partition}:${AWS::AccountId}:${Bucket}/${Role.Arn}/${Extra}/${!Literal}"
    assert (
        r.resolve({"Fn::Sub": [text, {"Extra": {"Ref": "AWS::Region"}}]})
        == "aws:123456789012:b1/r1.Arn/eu-west-1/${Literal}"
    )


def test_join_of_refs_getatts_and_imports():
    r = resolver(Vpc="vpc-1", Group="sg")
    value = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":",
                {"Ref": "Vpc"},
                ":",
                {"Fn::GetAtt": ["Group", "GroupId"]},
                ":",
                {"Fn::GetAtt": "Group.VpcId"},
                ":",
                {"Fn::ImportValue": "net:Subnet"},
            ],
        ]
    }
    assert r.resolve(value) == "arn:aws:vpc-1:sg.GroupId:sg.VpcId:imported:net:Subnet"


def test_no_value_removes_the_key_or_list_item():
    assert resolver().resolve({"A": {"Ref": "AWS::NoValue"}, "B": ["x", {"Ref": "AWS::NoValue"}]}) == {"B": ["x"]}


def test_policy_conditions_are_values_not_functions():
    statement = {"Condition": {"StringEquals": {"ec2:CreateAction": "CreateNetworkInterface"}}}
    assert resolver().resolve({"Statement": [statement]}) == {"Statement": [statement]}


@pytest.mark.parametrize(
    "value, message",
    [
        ({"Fn::If": ["IsProd", "a", "b"]}, r"Resources\.X\.Properties\.Y\.Fn::If: Fn::If is not supported"),
        ({"Fn::Join": ["", ["a", ["b"]]]}, r"Fn::Join: expected a string, got \['b'\]"),
        ({"Ref": "AWS::StackName"}, r"pseudo parameter AWS::StackName is not supported"),
        ({"Fn::Select": [3, ["a"]]}, r"cannot select item 3"),
        ({"Ref": "Missing"}, r"no Missing"),
    ],
)
def test_what_the_rehearsal_cannot_compute_fails_with_the_template_path(value, message):
    with pytest.raises(Unresolvable, match=message):
        resolver().resolve(value, "Resources.X.Properties.Y")


def test_custom_resource_properties_reach_the_handler_as_strings():
    assert cfn_strings({"Count": 2, "Flag": True, "Nested": [{"Size": 500}], "Text": "x"}) == {
        "Count": "2",
        "Flag": "true",
        "Nested": [{"Size": "500"}],
        "Text": "x",
    }
