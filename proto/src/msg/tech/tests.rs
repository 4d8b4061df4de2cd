//! The request's own description: kind, ticket and agent.

use super::*;

fn one_of_each() -> Vec<TechRequest> {
    let (agent, ticket, number) = (String::from("a1"), 7, 7);
    vec![
        TechRequest::ListAgents,
        TechRequest::NewTicket {
            title: "t".into(),
            agent: Some(agent.clone()),
            requester: "r".into(),
            priority: "normal".into(),
        },
        TechRequest::ListTickets,
        TechRequest::ShowTicket { number },
        TechRequest::Diagnostics {
            agent: agent.clone(),
            ticket,
        },
        TechRequest::RequestSession {
            agent: agent.clone(),
            ticket,
            scopes: vec![Scope::Diagnostics],
            duration_secs: 60,
            wait_secs: 60,
        },
        TechRequest::JoinSession {
            code: "123".into(),
            ticket,
        },
        TechRequest::EndSession {
            agent: agent.clone(),
            ticket,
        },
        TechRequest::Note {
            number,
            text: "n".into(),
        },
        TechRequest::Resolve {
            number,
            note: "n".into(),
        },
        TechRequest::Escalate {
            number,
            to: Tier::L2,
            note: "n".into(),
        },
        TechRequest::Export { number },
        TechRequest::Sync { number },
        TechRequest::ListScripts,
        TechRequest::ShowScript { name: "s".into() },
        TechRequest::RunScript {
            agent: agent.clone(),
            ticket,
            script: "s".into(),
            params: Vec::new(),
        },
        TechRequest::RenewCertificate {
            csr_pem: String::new(),
        },
        TechRequest::Collect {
            agent,
            ticket,
            path: "/p".into(),
        },
    ]
}

#[test]
fn every_request_has_its_own_kind_and_names_what_it_is_about() {
    let requests = one_of_each();
    let mut kinds: Vec<&str> = requests.iter().map(TechRequest::kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), requests.len(), "two requests share a kind");
    for req in &requests {
        let kind = req.kind();
        // A request that acts on an agent is always about a ticket (its evidence and
        // timeline go there), except opening the ticket itself.
        if req.agent().is_some() && kind != "new_ticket" {
            assert_eq!(req.ticket(), Some(7), "{kind}");
        }
        let about_ticket = matches!(
            kind,
            "show_ticket" | "note" | "resolve" | "escalate" | "export" | "sync"
        );
        if about_ticket {
            assert_eq!(req.ticket(), Some(7), "{kind}");
            assert_eq!(req.agent(), None, "{kind}");
        }
    }
    let new_ticket = requests.get(1).map(TechRequest::agent);
    assert_eq!(new_ticket, Some(Some("a1")));
}
